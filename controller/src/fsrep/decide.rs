//! The order of changes: what becomes of one change given the current state of its path
//! ([`decide`], pure), the step that applies that decision to the state ([`Fsrep::change`]),
//! and which tombstones can be forgotten ([`collectable`]).

use super::{CONFLICTS_KEPT, Fsrep, Pending, State, Upload, hostname, seal};
use crate::audit::Audit;
use crate::server::Ctl;
use clustermgr_proto::{FsrepChange, FsrepConflict, FsrepConflictsRecord, FsrepFile, FsrepVersion};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The paths whose tombstone can be forgotten: deleted longer than `ttl_ms` ago (by the
/// version's hybrid clock, milliseconds in its upper bits) and, for every server, a report
/// since this controller started that it holds that delete or no version of the path.
pub(super) fn collectable(
    files: &BTreeMap<String, FsrepFile>,
    known: &HashMap<String, HashMap<String, FsrepVersion>>,
    servers: &[String],
    now_ms: u64,
    ttl_ms: u64,
) -> Vec<String> {
    if servers.is_empty() {
        return Vec::new();
    }
    files
        .values()
        .filter(|f| f.deleted)
        .filter(|f| {
            let at = f.version.as_ref().map_or(0, |v| v.hlc >> 16);
            now_ms.saturating_sub(at) > ttl_ms
        })
        .filter(|f| {
            servers.iter().all(|n| {
                known
                    .get(n)
                    .is_some_and(|k| k.get(&f.path).is_none_or(|v| Some(v) == f.version.as_ref()))
            })
        })
        .map(|f| f.path.clone())
        .collect()
}

pub(super) fn same_content(a: &FsrepFile, b: &FsrepFile) -> bool {
    a.deleted == b.deleted
        && (a.deleted
            || (a.sha256 == b.sha256
                && a.mode == b.mode
                && a.owner == b.owner
                && a.group == b.group))
}

pub(super) fn newer(a: &FsrepVersion, b: Option<&FsrepVersion>) -> bool {
    rules::cmp_versions(Some(a), b) == Ordering::Greater
}

/// What becomes of one change, given the current state of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Same content as the current state: the sender records the current version.
    Adopt(FsrepVersion),
    /// The change becomes the current state at `version`; with a conflict (the change was not
    /// based on the current version but is the greater one): (winner, loser).
    Accept {
        version: FsrepVersion,
        conflict: Option<(FsrepVersion, FsrepVersion)>,
    },
    /// A concurrent change that lost: the current state stays.
    Lose {
        winner: FsrepVersion,
        loser: FsrepVersion,
    },
}

/// Orders one change against the current state (`v` is the change's version, its node id
/// already the sender's). The current version only grows: a change based on it but carrying a
/// smaller clock is given the next one.
pub(super) fn decide(
    cur: Option<&FsrepFile>,
    file: &FsrepFile,
    base: Option<&FsrepVersion>,
    mut v: FsrepVersion,
) -> Decision {
    let cur_v = cur.and_then(|c| c.version.clone());
    if let Some(c) = cur
        && same_content(c, file)
    {
        return Decision::Adopt(cur_v.unwrap_or_default());
    }
    let fast_forward = cur.is_none() || base == cur_v.as_ref();
    if !fast_forward {
        let current = cur_v.unwrap_or_default();
        return if newer(&v, Some(&current)) {
            Decision::Accept {
                conflict: Some((v.clone(), current)),
                version: v,
            }
        } else {
            Decision::Lose {
                winner: current,
                loser: v,
            }
        };
    }
    if !newer(&v, cur_v.as_ref()) {
        v.hlc = cur_v.as_ref().map_or(0, |c| c.hlc) + 1;
    }
    Decision::Accept {
        version: v,
        conflict: None,
    }
}

/// Checks a change's content: inline (its hash), or streamed (the upload it names, made by the
/// same node for the same path, size and hash). Returns the upload, taken from the state.
fn check_content(
    st: &mut State,
    node: &str,
    ch: &FsrepChange,
    file: &mut FsrepFile,
    max: u64,
) -> Result<Option<Upload>, String> {
    if file.deleted {
        file.content.clear();
        file.sha256.clear();
        file.size = 0;
        return Ok(None);
    }
    file.mode &= 0o1777;
    if ch.upload.is_empty() {
        if file.content.len() as u64 > max {
            return Err(format!(
                "{}: {} bytes, over the limit of {max} bytes",
                file.path,
                file.content.len()
            ));
        }
        // Larger contents are uploaded and kept on disk, not held in memory.
        if file.content.len() as u64 > rules::INLINE_MAX_BYTES {
            return Err(format!(
                "{}: {} bytes sent inline; a content over {} bytes is uploaded",
                file.path,
                file.content.len(),
                rules::INLINE_MAX_BYTES
            ));
        }
        if Sha256::digest(&file.content).as_slice() != file.sha256.as_slice() {
            return Err(format!("{}: content does not match its hash", file.path));
        }
        file.size = file.content.len() as u64;
        return Ok(None);
    }
    let up = st
        .uploads
        .remove(&ch.upload)
        .ok_or_else(|| format!("{}: no upload {:?} (expired?)", file.path, ch.upload))?;
    // Any other upload of the node for the path was for a change it replaced.
    st.discard_uploads(node, &file.path);
    if up.node != node
        || up.path != file.path
        || up.size != file.size
        || up.sha256 != file.sha256
        || !file.content.is_empty()
    {
        up.discard();
        return Err(format!(
            "{}: the change does not match its upload {:?}",
            file.path, ch.upload
        ));
    }
    Ok(Some(up))
}

impl Fsrep {
    /// Decides one change (see the module comment of `fsrep`).
    pub(super) fn change(
        &self,
        st: &mut State,
        ctl: &Ctl,
        node: &str,
        ch: FsrepChange,
        received: Instant,
    ) -> Option<Pending> {
        let mut file = ch.file.clone()?;
        let cfg = Self::config(&st.settings, true);
        let refuse = |st: &mut State, why: String| {
            tracing::warn!(node = %node, reason = %why, "replicated change refused");
            st.last_error.insert(node.to_string(), why);
        };
        let normal = clustermgr_shared::paths::normalize(&file.path)
            .map(|p| p.display().to_string())
            .ok();
        if normal.as_deref() != Some(file.path.as_str()) || !rules::replicated(&file.path, &cfg) {
            if let Some(up) = st.uploads.remove(&ch.upload) {
                up.discard();
            }
            refuse(st, format!("{}: not a replicated path", file.path));
            return None;
        }
        let upload = match check_content(st, node, &ch, &mut file, cfg.max_file_bytes) {
            Ok(u) => u,
            Err(why) => {
                refuse(st, why);
                return None;
            }
        };
        // The version is the node's: its id comes from its certificate, never from the message.
        let mut v = file.version.clone().unwrap_or_default();
        v.node_id = node.to_string();
        let cur = st.files.get(&file.path).cloned();
        let (v, conflict, lost) = match decide(cur.as_ref(), &file, ch.base.as_ref(), v) {
            Decision::Adopt(current) => {
                if let Some(up) = upload {
                    up.discard();
                }
                Self::adopt(st, node, &file.path, current);
                return None;
            }
            Decision::Accept { version, conflict } => (version, conflict, false),
            Decision::Lose { winner, loser } => (winner.clone(), Some((winner, loser)), true),
        };
        let conflict = conflict.map(|(winner, loser)| {
            let c = FsrepConflict {
                path: file.path.clone(),
                winner_host: hostname(ctl, &winner.node_id),
                loser_host: hostname(ctl, &loser.node_id),
                winner: Some(winner),
                loser: Some(loser),
                unix_ms: now_ms(),
            };
            tracing::warn!(path = %c.path, winner = %c.winner_host, loser = %c.loser_host, "concurrent edits of a replicated file; the loser is kept as a backup");
            st.conflicts.push_back(c.clone());
            while st.conflicts.len() > CONFLICTS_KEPT {
                st.conflicts.pop_front();
            }
            let list = FsrepConflictsRecord {
                conflicts: st.conflicts.iter().cloned().collect(),
            };
            let audit = Audit::new(format!("node:{node}"), "fsrep.conflict", c.path.clone()).ok(
                format!(
                    "winner={} loser={} (kept as a backup generation)",
                    c.winner_host, c.loser_host
                ),
            );
            (list, audit)
        });
        if lost {
            if let Some(up) = upload {
                up.discard();
            }
            // The node's own edit lost: it gets the current state (and backs its own up).
            if let Some(c) = cur {
                Self::send_apply(st, node, c, received);
            }
            let (list, audit) = conflict?;
            return Some(Pending {
                commit: Box::pin(ctl.store.put_fsrep_conflict(list, audit)),
                relay: None,
                drop_blob: None,
            });
        }
        file.version = Some(v.clone());
        if let Some(up) = upload
            && let Err(e) = self.blobs.commit(&up.file, &file.path, &v)
        {
            tracing::error!(error = %e, "cannot keep a replicated file's content");
            up.discard();
            return None;
        }
        let sealed = match seal(ctl, &file) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot seal a replicated file");
                return None;
            }
        };
        // The content this version replaces, once the new one is recorded.
        let drop_blob = cur
            .as_ref()
            .filter(|c| rules::streamed(c))
            .and_then(|c| c.version.as_ref())
            .map(|old| self.blobs.file(&file.path, old));
        st.files.insert(file.path.clone(), file.clone());
        st.changes += 1;
        Self::adopt(st, node, &file.path, v);
        Some(Pending {
            commit: Box::pin(
                ctl.store
                    .put_fsrep_file(file.path.clone(), sealed, conflict),
            ),
            relay: Some((node.to_string(), file, received)),
            drop_blob,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_tombstone_is_forgotten_only_when_old_and_held_everywhere() {
        let day = 24 * 3600 * 1000u64;
        let now = 30 * day;
        let at = |ms: u64, node: &str| ver(ms << 16, node);
        let mut files = BTreeMap::new();
        let mut tomb = |path: &str, v: FsrepVersion| {
            let mut f = file(0, Some(v), true);
            f.path = path.into();
            files.insert(path.to_string(), f);
        };
        tomb("/old", at(now - 8 * day, "a"));
        tomb("/young", at(now - day, "a"));
        tomb("/lagging", at(now - 8 * day, "a"));
        let mut live = file(1, Some(at(now - 9 * day, "a")), false);
        live.path = "/live".into();
        files.insert("/live".into(), live);
        let servers = vec!["a".to_string(), "b".to_string()];
        let mut known: HashMap<String, HashMap<String, FsrepVersion>> = HashMap::new();
        known.insert(
            "a".into(),
            HashMap::from([
                ("/old".to_string(), at(now - 8 * day, "a")),
                ("/lagging".to_string(), at(now - 8 * day, "a")),
            ]),
        );
        let ttl = 7 * day;
        // b has not reported since the start: nothing is forgotten.
        assert!(collectable(&files, &known, &servers, now, ttl).is_empty());
        // b never had /old; it still holds an older version of /lagging.
        known.insert(
            "b".into(),
            HashMap::from([("/lagging".to_string(), at(now - 20 * day, "b"))]),
        );
        assert_eq!(collectable(&files, &known, &servers, now, ttl), ["/old"]);
        // Once b holds the delete, /lagging goes too; /young waits for its week; /live stays.
        known
            .get_mut("b")
            .unwrap()
            .insert("/lagging".into(), at(now - 8 * day, "a"));
        assert_eq!(
            collectable(&files, &known, &servers, now, ttl),
            ["/lagging", "/old"]
        );
        assert!(collectable(&files, &known, &[], now, ttl).is_empty());

        // Forgetting drops the path from the state and from what each node is known to hold.
        let d = tempfile::tempdir().unwrap();
        let f = Fsrep {
            state: Mutex::new(State {
                files,
                known,
                ..Default::default()
            }),
            blobs: super::super::blobs::Blobs::open(d.path().to_path_buf()).unwrap(),
        };
        let gone = f.forget_tombstones(&servers, now);
        assert_eq!(gone, ["/lagging", "/old"]);
        let st = f.lock();
        assert!(st.files.contains_key("/young") && st.files.contains_key("/live"));
        assert!(!st.files.contains_key("/old"));
        assert!(st.known.values().all(|k| !k.contains_key("/lagging")));
    }

    fn ver(hlc: u64, node: &str) -> FsrepVersion {
        FsrepVersion {
            hlc,
            node_id: node.into(),
        }
    }

    fn file(sha: u8, v: Option<FsrepVersion>, deleted: bool) -> FsrepFile {
        FsrepFile {
            path: "/etc/gluu/conf/x".into(),
            version: v,
            deleted,
            sha256: if deleted { vec![] } else { vec![sha] },
            mode: 0o644,
            ..Default::default()
        }
    }

    /// (current state, change, base, change version, decision)
    type Case<'a> = (
        Option<&'a FsrepFile>,
        FsrepFile,
        Option<FsrepVersion>,
        FsrepVersion,
        Decision,
    );

    #[test]
    fn changes_are_ordered_and_conflicts_have_one_winner() {
        use Decision::*;
        let cur = file(1, Some(ver(10, "a")), false);
        let tomb = file(0, Some(ver(10, "a")), true);
        // (current, change content, base, change version) -> decision
        let cases: Vec<Case> = vec![
            // A new path.
            (
                None,
                file(2, None, false),
                None,
                ver(5, "b"),
                Accept {
                    version: ver(5, "b"),
                    conflict: None,
                },
            ),
            // Based on the current version.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(10, "a")),
                ver(20, "b"),
                Accept {
                    version: ver(20, "b"),
                    conflict: None,
                },
            ),
            // Based on it, but with a clock behind: the version still grows.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(10, "a")),
                ver(3, "b"),
                Accept {
                    version: ver(11, "b"),
                    conflict: None,
                },
            ),
            // Same content: adopt, whatever the base.
            (
                Some(&cur),
                file(1, None, false),
                None,
                ver(30, "b"),
                Adopt(ver(10, "a")),
            ),
            (
                Some(&tomb),
                file(0, None, true),
                Some(ver(2, "c")),
                ver(30, "b"),
                Adopt(ver(10, "a")),
            ),
            // Concurrent, newer: wins, the current state is the loser.
            (
                Some(&cur),
                file(2, None, false),
                Some(ver(7, "a")),
                ver(12, "b"),
                Accept {
                    version: ver(12, "b"),
                    conflict: Some((ver(12, "b"), ver(10, "a"))),
                },
            ),
            // Concurrent, older: loses.
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(9, "b"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(9, "b"),
                },
            ),
            // Same clock: the node id decides, the same way everywhere.
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(10, "0"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(10, "0"),
                },
            ),
            (
                Some(&cur),
                file(2, None, false),
                None,
                ver(10, "b"),
                Accept {
                    version: ver(10, "b"),
                    conflict: Some((ver(10, "b"), ver(10, "a"))),
                },
            ),
            // A delete made while away from a file changed since: a conflict like any other.
            (
                Some(&cur),
                file(0, None, true),
                Some(ver(4, "a")),
                ver(8, "b"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(8, "b"),
                },
            ),
            // A copy of a deleted file coming back with an older clock stays deleted.
            (
                Some(&tomb),
                file(3, None, false),
                None,
                ver(6, "c"),
                Lose {
                    winner: ver(10, "a"),
                    loser: ver(6, "c"),
                },
            ),
        ];
        for (i, (cur, f, base, v, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(cur, &f, base.as_ref(), v), want, "case {i}");
        }
    }

    #[test]
    fn content_equality_ignores_versions() {
        let a = FsrepFile {
            path: "/x".into(),
            sha256: vec![1],
            mode: 0o644,
            version: Some(FsrepVersion {
                hlc: 1,
                node_id: "a".into(),
            }),
            ..Default::default()
        };
        let mut b = a.clone();
        b.version = None;
        assert!(same_content(&a, &b));
        b.mode = 0o600;
        assert!(!same_content(&a, &b));
    }

    #[test]
    fn a_streamed_change_must_match_its_upload() {
        let d = tempfile::tempdir().unwrap();
        let mut st = State::default();
        let up = |node: &str, size: u64| {
            let p = d.path().join(format!("u-{node}-{size}"));
            std::fs::write(&p, "x").unwrap();
            Upload {
                node: node.into(),
                path: "/etc/gluu/conf/x".into(),
                sha256: vec![7; 32],
                size,
                file: p,
                at: Instant::now(),
            }
        };
        let mut f = FsrepFile {
            path: "/etc/gluu/conf/x".into(),
            sha256: vec![7; 32],
            size: 100_000,
            mode: 0o4755,
            ..Default::default()
        };
        let ch = |id: &str| FsrepChange {
            upload: id.into(),
            ..Default::default()
        };
        st.uploads.insert("u1".into(), up("n1", 100_000));
        let got = check_content(&mut st, "n1", &ch("u1"), &mut f, 1 << 20).unwrap();
        assert!(got.is_some());
        assert_eq!(f.mode, 0o755, "setuid is never replicated");
        // Another node's upload, another size, an unknown id: refused; a refused upload goes.
        st.uploads.insert("u2".into(), up("n2", 100_000));
        let e = check_content(&mut st, "n1", &ch("u2"), &mut f, 1 << 20).unwrap_err();
        assert!(e.contains("does not match its upload"), "{e}");
        assert!(!d.path().join("u-n2-100000").exists());
        st.uploads.insert("u3".into(), up("n1", 5));
        assert!(check_content(&mut st, "n1", &ch("u3"), &mut f, 1 << 20).is_err());
        let e = check_content(&mut st, "n1", &ch("nope"), &mut f, 1 << 20).unwrap_err();
        assert!(e.contains("no upload"), "{e}");
        // Inline: over the limit, or a wrong hash.
        let mut inline = FsrepFile {
            path: "/etc/gluu/conf/y".into(),
            content: vec![1; 10],
            ..Default::default()
        };
        let e = check_content(&mut st, "n1", &ch(""), &mut inline, 5).unwrap_err();
        assert!(e.contains("over the limit of 5 bytes"), "{e}");
        let e = check_content(&mut st, "n1", &ch(""), &mut inline, 50).unwrap_err();
        assert!(e.contains("hash"), "{e}");
        inline.sha256 = Sha256::digest(&inline.content).to_vec();
        check_content(&mut st, "n1", &ch(""), &mut inline, 50).unwrap();
        assert_eq!(inline.size, 10);
        // A large content inline (it would stay in memory): refused.
        inline.content = vec![0; rules::INLINE_MAX_BYTES as usize + 1];
        inline.sha256 = Sha256::digest(&inline.content).to_vec();
        let e = check_content(&mut st, "n1", &ch(""), &mut inline, 1 << 30).unwrap_err();
        assert!(e.contains("is uploaded"), "{e}");
    }
}
