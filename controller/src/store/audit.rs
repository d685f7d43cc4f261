//! The audit tables. Every row is in `audit` by sequence number. Routine rows (see
//! [`routine_key`]: unauthenticated attempts, what nodes report, the controller's
//! own checks) are merged: one row per kind and source per window, counting the rows it stands
//! for; their sequence numbers are also in `audit_routine`, and only they are trimmed by count.
//! Every other row (operator actions, enrollments, credential changes, CA events, workflows) is
//! deleted by age alone, so no flood of routine rows can push it out.

use super::{AUDIT, Result, SweepLimits, decode};
use clustermgr_proto::AuditEntry;
use prost::Message;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

/// Sequence numbers of the routine rows, oldest first.
const AUDIT_ROUTINE: TableDefinition<u64, ()> = TableDefinition::new("audit_routine");
/// The routine row of the current window for each merge key: "WINDOW|KEY" -> sequence number
/// (the window zero-padded, so that ended windows sort first).
const AUDIT_MERGE: TableDefinition<&str, u64> = TableDefinition::new("audit_merge");

/// Routine rows of one kind and source are merged within windows of this length.
pub const MERGE_WINDOW_MS: u64 = 3_600_000;

pub(super) fn open_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_ROUTINE)?;
    txn.open_table(AUDIT_MERGE)?;
    Ok(())
}

/// Appends one row, or merges it into the routine row of its kind and window.
pub(super) fn append_in(txn: &WriteTransaction, entry: &AuditEntry) -> Result<()> {
    let mut t = txn.open_table(AUDIT)?;
    let mut e = entry.clone();
    if e.unix_ms == 0 {
        e.unix_ms = clustermgr_shared::util::now_ms();
    }
    let key = routine_key(&e);
    let merge_key = key
        .as_ref()
        .map(|(k, _)| format!("{:020}|{k}", e.unix_ms / MERGE_WINDOW_MS));
    if let Some(mk) = &merge_key {
        let mut merge = txn.open_table(AUDIT_MERGE)?;
        let found = merge.get(mk.as_str())?.map(|v| v.value());
        let existing = match found {
            Some(seq) => t.get(seq)?.map(|v| v.value().to_vec()).map(|b| (seq, b)),
            None => None,
        };
        if let Some((seq, bytes)) = existing {
            let mut row: AuditEntry = decode("audit", &bytes)?;
            row.count = row.count.max(1) + 1;
            row.last_unix_ms = e.unix_ms;
            row.detail = e.detail;
            row.result = e.result;
            t.insert(seq, row.encode_to_vec().as_slice())?;
            return Ok(());
        }
        merge.remove(mk.as_str())?;
    }
    let seq = match t.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    e.seq = seq;
    if let (Some(mk), Some((_, target))) = (&merge_key, key) {
        e.target = target;
        e.count = 1;
        e.last_unix_ms = e.unix_ms;
        txn.open_table(AUDIT_MERGE)?.insert(mk.as_str(), seq)?;
        txn.open_table(AUDIT_ROUTINE)?.insert(seq, ())?;
    }
    t.insert(seq, e.encode_to_vec().as_slice())?;
    Ok(())
}

/// Deletes rows written before the cut-off (every kind), then the oldest routine rows beyond
/// the row limit, at most `batch` in all; forgets the merge keys of ended windows.
pub(super) fn sweep_in(txn: &WriteTransaction, l: &SweepLimits) -> Result<usize> {
    let mut t = txn.open_table(AUDIT)?;
    let mut routine = txn.open_table(AUDIT_ROUTINE)?;
    let mut doomed = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        if doomed.len() >= l.batch {
            break;
        }
        let e: AuditEntry = decode("audit", v.value())?;
        if e.unix_ms.max(e.last_unix_ms) < l.audit_before_ms {
            doomed.push(k.value());
        } else {
            break;
        }
    }
    for k in &doomed {
        t.remove(*k)?;
        routine.remove(*k)?;
    }
    let over = routine.len()?.saturating_sub(l.audit_max_rows) as usize;
    let room = l.batch.saturating_sub(doomed.len()).min(over);
    let oldest: Vec<u64> = routine
        .iter()?
        .take(room)
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    for k in &oldest {
        t.remove(*k)?;
        routine.remove(*k)?;
    }
    let current = format!(
        "{:020}|",
        clustermgr_shared::util::now_ms() / MERGE_WINDOW_MS
    );
    let mut merge = txn.open_table(AUDIT_MERGE)?;
    let ended: Vec<String> = merge
        .iter()?
        .map(|r| r.map(|(k, _)| k.value().to_string()))
        .take_while(|k| k.as_ref().is_ok_and(|k| k.as_str() < current.as_str()))
        .collect::<std::result::Result<_, _>>()?;
    for k in &ended {
        merge.remove(k.as_str())?;
    }
    Ok(doomed.len() + oldest.len())
}

/// Who unauthenticated callers are in the audit log.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Whether a row is routine, and then its merge key and the target its merged row shows.
/// Routine: unauthenticated attempts (one row per action and source prefix: an IPv4 address,
/// an IPv6 /48), what a node reports (per node and action, e.g. file replication conflicts)
/// and the controller's own checks (per action and target). Every other row is evidence
/// (operator actions, enrollments, credential changes, CA events, workflows): never merged,
/// never trimmed by count.
pub fn routine_key(e: &AuditEntry) -> Option<(String, String)> {
    let (target, scope) = if e.who == UNAUTHENTICATED {
        let prefix = source_prefix(&e.target);
        (prefix.clone(), prefix)
    } else if e.who.starts_with("node:") {
        (e.target.clone(), String::new())
    } else if e.who == "controller" {
        (e.target.clone(), e.target.clone())
    } else {
        return None;
    };
    Some((format!("{}|{}|{scope}", e.action, e.who), target))
}

/// An IPv6 source (an address or a /64) as its /48; anything else as it is.
fn source_prefix(target: &str) -> String {
    let addr = target.strip_suffix("/64").unwrap_or(target);
    match addr.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut o = v6.octets();
            o[6..].fill(0);
            format!("{}/48", std::net::Ipv6Addr::from(o))
        }
        _ => target.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::audit::Audit;
    use crate::store::{Store, SweepLimits};

    fn limits(max_rows: u64) -> SweepLimits {
        SweepLimits {
            audit_before_ms: 0,
            audit_max_rows: max_rows,
            jobs_before_ms: 0,
            tokens_expired_before_unix: 0,
            batch: 100_000,
        }
    }

    #[tokio::test]
    async fn a_flood_of_routine_rows_never_pushes_out_an_operator_action() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let evidence = Audit::new("operator:alice", "operator.create", "mallory").ok("role=admin");
        store.append_audit(evidence).await.unwrap();
        // Failed enrollments from 3,000 IPv6 /64s (in 30 /48s) and 2,000 IPv4 addresses, and
        // 5,000 replication conflicts from one node.
        let mut futs = Vec::new();
        for i in 0..3000u32 {
            let src = format!("2001:db8:{:x}:{:x}::/64", i % 30, i);
            let row = Audit::new("unauthenticated", "node.enroll", src).failed("1 failed attempt");
            futs.push(store.append_audit(row));
        }
        for i in 0..2000u32 {
            let src = format!("10.9.{}.{}", i / 250, i % 250);
            let row = Audit::new("unauthenticated", "node.enroll", src).failed("1 failed attempt");
            futs.push(store.append_audit(row));
        }
        for i in 0..5000u32 {
            let row = Audit::new("node:n1", "fsrep.conflict", format!("/etc/certs/f{i}"))
                .ok(format!("conflict {i}"));
            futs.push(store.append_audit(row));
        }
        for f in futs {
            f.await.unwrap();
        }
        let rows = store.audit_tail(10_000).unwrap();
        // One row per IPv6 /48 and window, one per IPv4 address, one for the node's conflicts.
        assert_eq!(rows.len(), 1 + 30 + 2000 + 1, "{:?}", &rows[..3]);
        let six = rows
            .iter()
            .find(|r| r.target == "2001:db8::/48")
            .expect("the /48's row");
        assert_eq!(six.count, 100);
        let conflicts = rows.iter().find(|r| r.action == "fsrep.conflict").unwrap();
        assert_eq!(
            (conflicts.count, conflicts.detail.as_str()),
            (5000, "conflict 4999")
        );

        store.sweep(limits(100)).await.unwrap();
        let rows = store.audit_tail(10_000).unwrap();
        assert_eq!(rows.len(), 101);
        assert_eq!(rows[0].who, "operator:alice", "{:?}", rows[0]);
        assert_eq!(rows[0].action, "operator.create");
        // The newest routine rows are the ones kept.
        assert_eq!(rows[100].action, "fsrep.conflict");
    }
}
