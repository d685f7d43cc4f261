//! What one node can make the controller keep and do: the paths kept and their bytes (capped),
//! its changes per second (a token bucket; more wait), its pending uploads, and its clock
//! (bounded by the controller's). What a limit held back is kept per node for `fsrep status`.

use super::{Bucket, Fsrep, State, settings};
use clustermgr_proto::{FsrepFile, FsrepReport, FsrepVersion};
use clustermgr_shared::fsrep as rules;
use clustermgr_shared::util::now_ms;
use std::time::{Duration, Instant};

/// How far ahead of the controller's clock a change's hybrid clock may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);
/// Uploads a node may have waiting for their change.
pub(super) const UPLOADS_PER_NODE: usize = 64;
/// Entries kept per node in its `capped` list (one per limit, so all fit).
const CAPPED_KEPT: usize = 20;

/// Which limit or check held something back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    Files,
    Bytes,
    Uploads,
    Clock,
    Rate,
    Queue,
}

/// What a limit held back for a node: the latest occurrence, and how many there were.
#[derive(Debug, Clone)]
pub(super) struct Capped {
    limit: Limit,
    last: String,
    count: u64,
}

impl Capped {
    fn shown(&self) -> String {
        if self.count > 1 {
            format!("{} ({} times)", self.last, self.count)
        } else {
            self.last.clone()
        }
    }
}

/// Longest text kept from a node's report or acknowledgement, and entries kept per list.
const TEXT_KEPT: usize = 1024;
const REPORT_ENTRIES: usize = 20;

/// `s` cut to [`TEXT_KEPT`] bytes (at a character boundary).
pub(super) fn bounded(mut s: String) -> String {
    if s.len() > TEXT_KEPT {
        let mut at = TEXT_KEPT;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

/// A node's report as the controller keeps it: its lists and texts bounded (a node's report
/// is what it says, and a hostile one could say a lot).
pub(super) fn bounded_report(mut r: FsrepReport) -> FsrepReport {
    let list = |l: &mut Vec<String>| {
        let cut = l.len().saturating_sub(REPORT_ENTRIES);
        l.drain(..cut);
        for s in l.iter_mut() {
            *s = bounded(std::mem::take(s));
        }
    };
    list(&mut r.refused);
    list(&mut r.capped);
    let cut = r.action_runs.len().saturating_sub(REPORT_ENTRIES);
    r.action_runs.drain(..cut);
    for a in &mut r.action_runs {
        a.service = bounded(std::mem::take(&mut a.service));
        a.error = bounded(std::mem::take(&mut a.error));
    }
    for s in [
        &mut r.watch_error,
        &mut r.inactive,
        &mut r.flavor,
        &mut r.base,
    ] {
        *s = bounded(std::mem::take(s));
    }
    r
}

/// Whether `v`'s clock (milliseconds in its upper bits) is within [`MAX_CLOCK_SKEW`] of
/// `now_ms`; the error says by how much it is not.
pub(super) fn check_clock(v: &FsrepVersion, now_ms: u64) -> Result<(), (Limit, String)> {
    let at = v.hlc >> 16;
    let bound = now_ms.saturating_add(MAX_CLOCK_SKEW.as_millis() as u64);
    if at <= bound {
        return Ok(());
    }
    Err((
        Limit::Clock,
        format!(
            "clock {} s ahead of the controller's (at most {} s allowed); refused",
            at.saturating_sub(now_ms) / 1000,
            MAX_CLOCK_SKEW.as_secs()
        ),
    ))
}

impl State {
    /// Records `f` as the current state of its path (the byte count follows).
    pub(super) fn put_file(&mut self, f: FsrepFile) {
        let add = if f.deleted { 0 } else { f.size };
        if let Some(old) = self.files.insert(f.path.clone(), f)
            && !old.deleted
        {
            self.live_bytes = self.live_bytes.saturating_sub(old.size);
        }
        self.live_bytes = self.live_bytes.saturating_add(add);
    }

    pub(super) fn remove_file(&mut self, path: &str) {
        if let Some(old) = self.files.remove(path)
            && !old.deleted
        {
            self.live_bytes = self.live_bytes.saturating_sub(old.size);
        }
    }

    /// Notes what a limit held back for `node`: one entry per limit, the latest occurrence
    /// and a count, moved to the end.
    pub(super) fn cap(&mut self, node: &str, (limit, what): (Limit, String)) {
        let l = self.capped.entry(node.to_string()).or_default();
        let count = match l.iter().position(|c| c.limit == limit) {
            Some(i) => l.remove(i).map_or(0, |c| c.count),
            None => 0,
        };
        if count == 0 || limit != Limit::Rate {
            tracing::warn!(node = %node, limit = %what, "file replication limit");
        }
        l.push_back(Capped {
            limit,
            last: what,
            count: count.saturating_add(1),
        });
        while l.len() > CAPPED_KEPT {
            l.pop_front();
        }
    }

    pub(super) fn capped_of(&self, node: &str) -> Vec<String> {
        self.capped
            .get(node)
            .map(|l| l.iter().map(Capped::shown).collect())
            .unwrap_or_default()
    }

    /// Bytes of uploads waiting for their change.
    pub(super) fn pending_upload_bytes(&self) -> u64 {
        self.uploads
            .values()
            .fold(0u64, |n, u| n.saturating_add(u.size))
    }

    /// Whether `file` may become the current state of its path (replacing `cur`): the paths
    /// and bytes kept (with the uploads still waiting for their change, this one's taken from
    /// them already) stay within the limits.
    pub(super) fn within_caps(
        &self,
        cur: Option<&FsrepFile>,
        file: &FsrepFile,
    ) -> Result<(), (Limit, String)> {
        let l = settings::limits(&self.settings);
        if cur.is_none() && self.files.len() as u64 >= l.max_files {
            return Err((
                Limit::Files,
                format!(
                    "{}: the controller keeps {} paths (files and remembered deletes), its limit \
                 (fsrep limits --max-files); refused",
                    file.path, l.max_files
                ),
            ));
        }
        if file.deleted {
            return Ok(());
        }
        let old = cur.filter(|c| !c.deleted).map_or(0, |c| c.size);
        let pending = self.pending_upload_bytes();
        let total = self
            .live_bytes
            .saturating_sub(old)
            .saturating_add(pending)
            .saturating_add(file.size);
        if total > l.max_total_bytes {
            return Err((
                Limit::Bytes,
                format!(
                    "{}: {} bytes would take the controller's content over its limit of {} bytes \
                 (fsrep limits --max-total-bytes); refused",
                    file.path, file.size, l.max_total_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl Fsrep {
    /// Takes `n` changes from `node`'s allowance: None when admitted, otherwise how long to wait
    /// before asking again (the wait is noted in its `capped` list).
    pub fn admit(&self, node: &str, n: usize) -> Option<Duration> {
        let mut st = self.lock();
        let rate = f64::from(settings::limits(&st.settings).changes_per_second.max(1));
        let cap = rate * f64::from(rules::BURST_SECONDS);
        let now = Instant::now();
        let b = st.buckets.entry(node.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
        b.at = now;
        // A batch larger than the burst goes once the bucket is full, and leaves it in debt.
        let need = (n as f64).min(cap);
        if b.tokens >= need {
            b.tokens -= n as f64;
            return None;
        }
        let wait = Duration::from_secs_f64(((need - b.tokens) / rate).max(0.001));
        st.cap(
            node,
            (
                Limit::Rate,
                format!(
                    "changes over {rate} a second (fsrep limits --changes-per-second): deferred"
                ),
            ),
        );
        Some(wait)
    }

    /// Notes that `node`'s changes wait for the commit queue.
    pub fn note_queue_full(&self, node: &str, len: usize) {
        self.lock().cap(
            node,
            (
                Limit::Queue,
                format!("commit queue full ({len} decided changes): the node's changes deferred"),
            ),
        );
    }

    /// The clock check against this controller's clock.
    pub(super) fn clock_ok(v: &FsrepVersion) -> Result<(), (Limit, String)> {
        check_clock(v, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::{FsrepLimits, FsrepSettings};

    fn f(path: &str, size: u64, deleted: bool) -> FsrepFile {
        FsrepFile {
            path: path.into(),
            size,
            deleted,
            ..Default::default()
        }
    }

    #[test]
    fn clocks_ahead_of_the_controller_are_refused_without_overflow() {
        let now = 1_700_000_000_000u64;
        let v = |hlc| FsrepVersion {
            hlc,
            node_id: "n".into(),
        };
        assert!(check_clock(&v(now << 16), now).is_ok());
        assert!(check_clock(&v((now + 599_000) << 16), now).is_ok());
        let (_, e) = check_clock(&v((now + 3_600_000) << 16), now).unwrap_err();
        assert!(e.contains("3600 s ahead"), "{e}");
        assert!(check_clock(&v(u64::MAX), now).is_err());
        assert!(check_clock(&v(u64::MAX), u64::MAX).is_ok());
    }

    #[test]
    fn a_node_s_report_is_kept_bounded() {
        let r = bounded_report(FsrepReport {
            refused: (0..10_000)
                .map(|i| format!("{i}: {}", "x".repeat(5000)))
                .collect(),
            watch_error: "é".repeat(4000),
            ..Default::default()
        });
        assert_eq!(r.refused.len(), REPORT_ENTRIES);
        assert!(r.refused[REPORT_ENTRIES - 1].starts_with("9999: "));
        assert!(r.refused.iter().all(|s| s.len() <= TEXT_KEPT + 3));
        assert!(r.watch_error.len() <= TEXT_KEPT + 3);
    }

    #[test]
    fn paths_and_bytes_stay_within_their_caps() {
        let mut st = State {
            settings: FsrepSettings {
                limits: Some(FsrepLimits {
                    max_files: 2,
                    max_total_bytes: 100,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        st.put_file(f("/a", 60, false));
        assert_eq!(st.live_bytes, 60);
        // Over the bytes: refused; replacing the same path counts only the difference.
        let (_, e) = st.within_caps(None, &f("/b", 41, false)).unwrap_err();
        assert!(e.contains("--max-total-bytes"), "{e}");
        let cur = st.files.get("/a").cloned();
        assert!(st.within_caps(cur.as_ref(), &f("/a", 100, false)).is_ok());
        st.put_file(f("/b", 40, false));
        assert_eq!(st.live_bytes, 100);
        // Over the paths: a new path is refused, a delete of a kept one is not.
        let (_, e) = st.within_caps(None, &f("/c", 0, false)).unwrap_err();
        assert!(e.contains("--max-files"), "{e}");
        let cur = st.files.get("/b").cloned();
        assert!(st.within_caps(cur.as_ref(), &f("/b", 0, true)).is_ok());
        st.put_file(f("/b", 0, true));
        assert_eq!(st.live_bytes, 60);
        st.remove_file("/a");
        assert_eq!(st.live_bytes, 0);
        // Notes: one per limit, the latest with a count, the newest last.
        st.cap("n1", (Limit::Files, "/x: refused".into()));
        st.cap("n1", (Limit::Clock, "/y: clock".into()));
        st.cap("n1", (Limit::Files, "/z: refused".into()));
        assert_eq!(st.capped_of("n1"), ["/y: clock", "/z: refused (2 times)"]);
        assert!(st.capped_of("n2").is_empty());
    }

    #[test]
    fn a_node_s_changes_are_admitted_at_its_rate() {
        let d = tempfile::tempdir().unwrap();
        let fs = Fsrep {
            state: std::sync::Mutex::new(State {
                settings: FsrepSettings {
                    limits: Some(FsrepLimits {
                        changes_per_second: 10,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            blobs: super::super::blobs::Blobs::open(d.path().to_path_buf()).unwrap(),
        };
        // A burst of ten seconds' worth, then a wait; another node has its own allowance.
        for _ in 0..100 {
            assert!(fs.admit("n1", 1).is_none());
        }
        let wait = fs.admit("n1", 1).unwrap();
        assert!(wait <= Duration::from_millis(101), "{wait:?}");
        assert!(fs.admit("n2", 100).is_none());
        assert!(fs.admit("n2", 1000).is_some(), "the bucket is empty");
        assert!(fs.lock().capped_of("n1")[0].contains("deferred"));
    }
}
