//! What `fsrep status` shows: the settings, each node's stream and report, conflicts and the
//! propagation latency.

use super::{Fsrep, LATENCY_BOUNDS_MS, SAMPLES_KEPT, State, hostname};
use crate::ctl::Ctl;
use clustermgr_proto::{FsrepFile, FsrepNodeStatus, FsrepStatus};
use clustermgr_shared::fsrep as rules;
use std::time::Duration;

impl Fsrep {
    pub fn status(&self, ctl: &Ctl) -> FsrepStatus {
        let servers: Vec<String> = ctl
            .store
            .servers()
            .map(|s| s.into_iter().map(|s| s.node_id).collect())
            .unwrap_or_default();
        let st = self.lock();
        let cfg = Self::config(&st.settings, true);
        let current: Vec<&FsrepFile> = st
            .files
            .values()
            .filter(|f| rules::replicated(&f.path, &cfg))
            .collect();
        let mut nodes = Vec::new();
        let mut ids: Vec<String> = servers.clone();
        for id in st.peers.keys() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        for id in ids {
            let peer = st.peers.get(&id);
            let known = st.known.get(&id);
            let behind = current
                .iter()
                .filter(|f| {
                    let k = known.and_then(|k| k.get(&f.path));
                    k != f.version.as_ref() && !(f.deleted && k.is_none())
                })
                .count() as u64;
            let mut report = st.reports.get(&id).cloned().unwrap_or_default();
            if matches!(ctl.store.node(&id), Ok(Some(n)) if !n.approved) {
                report.inactive = "awaiting approval (clustermgr node approve): it neither sends \
                                   nor receives files"
                    .into();
            }
            let mut capped = st.capped_of(&id);
            capped.extend(report.capped.iter().map(|c| format!("on the node: {c}")));
            nodes.push(FsrepNodeStatus {
                hostname: hostname(ctl, &id),
                connected: peer.is_some_and(|p| p.enabled),
                queued: peer.map_or(0, |p| p.queued.len() as u64),
                behind,
                watch_error: report.watch_error,
                watched_dirs: report.watched_dirs,
                action_runs: report.action_runs,
                refused: report.refused,
                actions_pending: report.actions_pending,
                inactive: report.inactive,
                flavor: report.flavor,
                base: report.base,
                last_error: st.last_error.get(&id).cloned().unwrap_or_default(),
                capped,
                node_id: id,
            });
        }
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        let mut sorted: Vec<u64> = st.samples.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |q: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[i.min(sorted.len() - 1)]
        };
        FsrepStatus {
            settings: Some(st.settings.clone()),
            nodes,
            conflicts: st.conflicts.iter().cloned().collect(),
            files: current.iter().filter(|f| !f.deleted).count() as u64,
            tombstones: current.iter().filter(|f| f.deleted).count() as u64,
            changes: st.changes,
            bytes: st.live_bytes,
            latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            latency_counts: st.latency_counts.clone(),
            latency_p50_ms: pct(0.5),
            latency_p99_ms: pct(0.99),
        }
    }
}

impl State {
    pub(super) fn record_latency(&mut self, d: Duration) {
        let ms = d.as_millis() as u64;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        if let Some(c) = self.latency_counts.get_mut(i) {
            *c += 1;
        }
        self.samples.push_back(ms);
        while self.samples.len() > SAMPLES_KEPT {
            self.samples.pop_front();
        }
    }
}
