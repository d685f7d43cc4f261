//! The order of changes: what becomes of one change given the current state of its path
//! ([`decide`], pure), the step that applies that decision to the state ([`Fsrep::change`]),
//! and which tombstones can be forgotten ([`collectable`]).

use super::limits::Limit;
use super::{CONFLICTS_KEPT, Fsrep, Pending, State, Upload, hostname, seal};
use crate::audit::Audit;
use crate::ctl::Ctl;
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
        v.hlc = cur_v.as_ref().map_or(0, |c| c.hlc).saturating_add(1);
    }
    Decision::Accept {
        version: v,
        conflict: None,
    }
}

/// Checks a change's path (normal and replicated; if not, its upload is discarded) and then its
/// content ([`check_content`]).
fn admit(
    st: &mut State,
    node: &str,
    ch: &FsrepChange,
    file: &mut FsrepFile,
    cfg: &clustermgr_proto::FsrepConfig,
) -> Result<Option<Upload>, String> {
    let normal = clustermgr_shared::paths::normalize(&file.path)
        .map(|p| p.display().to_string())
        .ok();
    if normal.as_deref() != Some(file.path.as_str()) || !rules::replicated(&file.path, cfg) {
        if let Some(up) = st.uploads.remove(&ch.upload) {
            up.discard();
        }
        return Err(format!("{}: not a replicated path", file.path));
    }
    check_content(st, node, ch, file, cfg.max_file_bytes)
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
        let capped = |st: &mut State, upload: Option<Upload>, (limit, why): (Limit, String)| {
            if let Some(up) = upload {
                up.discard();
            }
            st.last_error.insert(node.to_string(), why.clone());
            st.cap(node, (limit, why));
        };
        let upload = match admit(st, node, &ch, &mut file, &cfg) {
            Ok(u) => u,
            Err(why) => {
                refuse(st, why);
                return None;
            }
        };
        // The version is the node's: its id comes from its certificate, never from the message.
        let mut v = file.version.clone().unwrap_or_default();
        v.node_id = node.to_string();
        // Its clock may not run ahead of the controller's (it would win every later change).
        if let Err((limit, why)) = Self::clock_ok(&v) {
            capped(st, upload, (limit, format!("{}: {why}", file.path)));
            return None;
        }
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
        if !lost && let Err(why) = st.within_caps(cur.as_ref(), &file) {
            capped(st, upload, why);
            return None;
        }
        let conflict = conflict
            .map(|(winner, loser)| record_conflict(st, ctl, node, &file.path, winner, loser));
        if lost {
            return self.lose(st, ctl, node, upload, cur, conflict, received);
        }
        file.version = Some(v.clone());
        // A content written here is synced before its change is recorded (outside the lock).
        let sync_blob = self.keep_content(st, ctl, node, upload, &file, &v)?;
        file.content = Vec::new();
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
        st.put_file(file.clone());
        st.changes += 1;
        Self::adopt(st, node, &file.path, v);
        Some(Pending {
            commit: Box::pin(ctl.store.put_fsrep_file(
                file.path.clone(),
                sealed,
                conflict,
                sync_blob,
            )),
            relay: Some((node.to_string(), file, received)),
            drop_blob,
        })
    }

    /// The node's own edit lost: it gets the current state (and backs its own up); the
    /// conflict is recorded.
    #[allow(clippy::too_many_arguments)]
    fn lose(
        &self,
        st: &mut State,
        ctl: &Ctl,
        node: &str,
        upload: Option<Upload>,
        cur: Option<FsrepFile>,
        conflict: Option<(FsrepConflictsRecord, clustermgr_proto::AuditEntry)>,
        received: Instant,
    ) -> Option<Pending> {
        if let Some(up) = upload {
            up.discard();
        }
        if let Some(c) = cur {
            self.send_apply(st, &ctl.sealer, node, c, received);
        }
        let (list, audit) = conflict?;
        Some(Pending {
            commit: Box::pin(ctl.store.put_fsrep_conflict(list, audit)),
            relay: None,
            drop_blob: None,
        })
    }

    /// Every content goes to disk; the state keeps its size and hash. `None` when it cannot be
    /// kept (the node's last error says why); else the file to sync, when one was written here.
    fn keep_content(
        &self,
        st: &mut State,
        ctl: &Ctl,
        node: &str,
        upload: Option<Upload>,
        file: &FsrepFile,
        v: &FsrepVersion,
    ) -> Option<Option<std::path::PathBuf>> {
        let kept = match upload {
            Some(up) => {
                let r = self.blobs.commit(&up.file, &file.path, v);
                if r.is_err() {
                    up.discard();
                }
                r.map(|()| None)
            }
            None if !file.deleted && !file.content.is_empty() => self
                .blobs
                .write_whole(&ctl.sealer, &file.path, v, &file.content)
                .map(Some),
            None => Ok(None),
        };
        match kept {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot keep a replicated file's content");
                st.last_error
                    .insert(node.to_string(), format!("{}: {e}", file.path));
                None
            }
        }
    }
}

/// Keeps a conflict in the state's list; returns the list to store and the audit row.
fn record_conflict(
    st: &mut State,
    ctl: &Ctl,
    node: &str,
    path: &str,
    winner: FsrepVersion,
    loser: FsrepVersion,
) -> (FsrepConflictsRecord, clustermgr_proto::AuditEntry) {
    let c = FsrepConflict {
        path: path.to_string(),
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
    let audit = Audit::new(format!("node:{node}"), "fsrep.conflict", c.path.clone()).ok(format!(
        "winner={} loser={} (kept as a backup generation)",
        c.winner_host, c.loser_host
    ));
    (list, audit)
}

#[cfg(test)]
mod tests;
