//! Sending to the nodes: relays after commit, the catch-up pump, and the states as they travel
//! (an inline content read back from disk). A node has at most `IN_FLIGHT` states
//! unacknowledged; what waits for it is a path in its backlog, never a content in memory.

use super::blobs::Blobs;
use super::decide::newer;
use super::{Fsrep, IN_FLIGHT, State};
use crate::sealing::Sealer;
use clustermgr_proto::{FsrepDown, FsrepFile, FsrepKnown, FsrepVersion, fsrep_down};
use clustermgr_shared::fsrep as rules;
use std::time::Instant;

impl Fsrep {
    pub(super) fn send(st: &mut State, node: &str, msg: fsrep_down::Msg) -> bool {
        let Some(p) = st.peers.get(node) else {
            return false;
        };
        if p.tx.try_send(Ok(FsrepDown { msg: Some(msg) })).is_ok() {
            return true;
        }
        // A node that does not keep up starts again from a Hello (it catches up by versions).
        tracing::warn!(node = %node, "file replication queue full; the node's stream restarts");
        st.peers.remove(node);
        false
    }

    /// Sends a catching-up node more of what it lacks, keeping at most `IN_FLIGHT` unacknowledged.
    pub(super) fn pump(&self, st: &mut State, sealer: &Sealer, node: &str, received: Instant) {
        loop {
            let next = match st.peers.get_mut(node) {
                Some(p) if p.queued.len() < IN_FLIGHT => p.backlog.pop_front(),
                _ => None,
            };
            let Some(path) = next else { return };
            let Some(f) = st.files.get(&path).cloned() else {
                continue;
            };
            self.send_apply(st, sealer, node, f, received);
        }
    }

    /// The state as it travels: a content up to the inline size read back from disk into it.
    fn wire(&self, sealer: &Sealer, mut f: FsrepFile) -> Option<FsrepFile> {
        if f.deleted || f.size == 0 || f.size > rules::INLINE_MAX_BYTES {
            return Some(f);
        }
        let v = f.version.clone().unwrap_or_default();
        let mut content = Vec::with_capacity(f.size as usize);
        let read = Blobs::read_parts(sealer, &self.blobs.file(&f.path, &v), f.size, |p| {
            content.extend_from_slice(&p);
            true
        });
        match read {
            Ok(()) if content.len() as u64 == f.size => {
                f.content = content;
                Some(f)
            }
            Ok(()) => None,
            Err(e) => {
                tracing::error!(path = %f.path, error = %e, "cannot read a replicated file's content on the controller");
                None
            }
        }
    }

    pub(super) fn send_apply(
        &self,
        st: &mut State,
        sealer: &Sealer,
        node: &str,
        f: FsrepFile,
        received: Instant,
    ) {
        if let Some(f) = self.wire(sealer, f) {
            Self::send_wired(st, node, f, received);
        }
    }

    /// Sends a state already in its travelling form, and counts it in flight.
    fn send_wired(st: &mut State, node: &str, f: FsrepFile, received: Instant) {
        let (path, v) = (f.path.clone(), f.version.clone().unwrap_or_default());
        if Self::send(st, node, fsrep_down::Msg::Apply(f))
            && let Some(p) = st.peers.get_mut(node)
        {
            p.queued.insert(path, (v, received));
        }
    }

    pub(super) fn adopt(st: &mut State, node: &str, path: &str, v: FsrepVersion) {
        st.known
            .entry(node.to_string())
            .or_default()
            .insert(path.to_string(), v.clone());
        Self::send(
            st,
            node,
            fsrep_down::Msg::Adopt(FsrepKnown {
                path: path.to_string(),
                version: Some(v),
            }),
        );
    }

    /// After its commit: the change goes to every other node that replicates its path.
    pub(super) fn relay(&self, sealer: &Sealer, origin: &str, file: FsrepFile, received: Instant) {
        let mut st = self.lock();
        // Still the current state (a later change may have replaced it meanwhile).
        if st.files.get(&file.path).map(|f| &f.version) != Some(&file.version) {
            return;
        }
        let cfg = Self::config(&st.settings, true);
        if !rules::replicated(&file.path, &cfg) {
            return;
        }
        let targets: Vec<String> = st
            .peers
            .iter()
            .filter(|(id, p)| id.as_str() != origin && p.enabled && p.hello)
            .map(|(id, _)| id.clone())
            .collect();
        // Read from disk once for every node it goes to.
        let mut wired: Option<Option<FsrepFile>> = None;
        for id in targets {
            let has = st.known.get(&id).and_then(|k| k.get(&file.path)).cloned();
            if file
                .version
                .as_ref()
                .is_some_and(|v| !newer(v, has.as_ref()))
            {
                continue;
            }
            // A node with `IN_FLIGHT` unacknowledged gets it (its newest version) as it
            // acknowledges: what waits for a slow node is a path, not a content.
            if let Some(p) = st.peers.get_mut(&id)
                && p.queued.len() >= IN_FLIGHT
            {
                if !p.backlog.contains(&file.path) {
                    p.backlog.push_back(file.path.clone());
                }
                continue;
            }
            let w = wired.get_or_insert_with(|| self.wire(sealer, file.clone()));
            if let Some(f) = w.clone() {
                Self::send_wired(&mut st, &id, f, received);
            }
        }
    }
}
