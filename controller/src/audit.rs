//! The audit log: who did what, when, with which result. Entries are built from fields the
//! controller chooses (ids, names, roles, paths, sizes), never from request payloads, so secrets
//! (join tokens, keys, file contents) cannot reach it.
//!
//! A successful change writes its audit row in the same transaction as the change (the store's
//! typed methods take the row), so a change is never committed without its row, and a row that
//! cannot be written fails the call. A refused or failed call writes a row of its own.

use crate::store::{Store, StoreError};
use clustermgr_proto::AuditEntry;
use clustermgr_shared::util::now_ms;

/// The subject of one audited call: who, which action, on what.
#[derive(Debug, Clone)]
pub struct Audit {
    pub who: String,
    pub action: &'static str,
    pub target: String,
}

impl Audit {
    pub fn new(who: impl ToString, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            who: who.to_string(),
            action,
            target: clean(&target.into(), 256),
        }
    }

    /// The row for a successful call.
    pub fn ok(&self, detail: impl Into<String>) -> AuditEntry {
        self.entry(detail.into(), "ok".into())
    }

    /// The row for a refused or failed call.
    pub fn failed(&self, error: &str) -> AuditEntry {
        self.entry(String::new(), format!("error: {}", clean(error, 512)))
    }

    /// The same subject with another target (e.g. the resolved node id).
    pub fn on(&self, target: impl Into<String>) -> Self {
        Self {
            target: clean(&target.into(), 256),
            ..self.clone()
        }
    }

    fn entry(&self, detail: String, result: String) -> AuditEntry {
        AuditEntry {
            seq: 0,
            unix_ms: now_ms(),
            who: self.who.clone(),
            action: self.action.to_string(),
            target: self.target.clone(),
            detail: clean(&detail, 1024),
            result,
            ..Default::default()
        }
    }
}

/// Writes the row of a call that failed (its change, if any, was not committed). A row that
/// cannot be written is logged: the call fails anyway.
pub async fn record_failure<T, E: std::fmt::Display>(
    store: &Store,
    audit: &Audit,
    result: &Result<T, E>,
) {
    if let Err(e) = result
        && let Err(se) = store.append_audit(audit.failed(&e.to_string())).await
    {
        tracing::error!(error = %se, action = audit.action, "cannot write the audit log");
    }
}

/// The newest `limit` entries, oldest first.
pub fn list(store: &Store, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    store.audit_tail(limit)
}

pub use crate::store::{UNAUTHENTICATED, routine_key};

pub use clustermgr_shared::util::clean;

/// Appends one row in its own transaction (for actions that change no record, e.g. CA files).
pub async fn record(
    store: &Store,
    who: String,
    action: &str,
    target: String,
    detail: String,
    result: String,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        seq: 0,
        unix_ms: now_ms(),
        who,
        action: action.to_string(),
        target: clean(&target, 256),
        detail: clean(&detail, 1024),
        result: clean(&result, 512),
        ..Default::default()
    };
    store.append_audit(entry).await
}

/// `ok` or `error: <message>` for a call's result.
pub fn outcome<T>(r: &Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => format!("error: {}", s.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_rows_are_told_from_evidence() {
        let key = |who: &str, action: &'static str, target: &str| {
            routine_key(&Audit::new(who, action, target).ok(""))
        };
        assert_eq!(key("operator:alice", "job.submit", "n1"), None);
        assert_eq!(key("token:t1", "node.enroll", "n1"), None);
        assert_eq!(key("controller:schedule", "keys.rotate", "cluster"), None);
        let (k, target) = key(UNAUTHENTICATED, "node.enroll", "2001:db8:0:7::/64").unwrap();
        assert_eq!(target, "2001:db8::/48");
        assert_eq!(k, "node.enroll|unauthenticated|2001:db8::/48");
        let (_, target) = key(UNAUTHENTICATED, "node.enroll", "192.0.2.7").unwrap();
        assert_eq!(target, "192.0.2.7");
        let (k, target) = key("node:n1", "fsrep.conflict", "/etc/x").unwrap();
        assert_eq!(
            (k.as_str(), target.as_str()),
            ("fsrep.conflict|node:n1|", "/etc/x")
        );
    }
}
