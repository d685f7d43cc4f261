//! The audit log: who did what, when, with which result. Entries are built from fields the
//! controller chooses (ids, names, roles, paths, sizes), never from request payloads, so secrets
//! (join tokens, keys, file contents) cannot reach it.

use crate::store::{AUDIT, Store, StoreError, decode};
use clustermgr_proto::AuditEntry;
use clustermgr_shared::util::now_ms;
use prost::Message;
use redb::ReadableTable;

pub async fn record(
    store: &Store,
    who: String,
    action: &str,
    target: String,
    detail: String,
    result: String,
) -> Result<(), StoreError> {
    let action = action.to_string();
    store
        .write(move |txn| {
            let mut t = txn.open_table(AUDIT)?;
            let seq = match t.last()? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            let entry = AuditEntry {
                seq,
                unix_ms: now_ms(),
                who,
                action,
                target,
                detail,
                result,
            };
            t.insert(seq, entry.encode_to_vec().as_slice())?;
            Ok(())
        })
        .await
}

/// The newest `limit` entries, oldest first.
pub fn list(store: &Store, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    store.read(|txn| {
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev().take(limit) {
            let (_, v) = row?;
            out.push(decode::<AuditEntry>("audit", v.value())?);
        }
        out.reverse();
        Ok(out)
    })
}

/// `ok` or `error: <message>` for a call's result.
pub fn outcome<T>(r: &Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => format!("error: {}", s.message()),
    }
}
