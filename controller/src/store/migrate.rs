//! Migrations of the store between record formats.
//!
//! The store records the version of its formats (`meta["schema"]`, [`SCHEMA`]). At open, a file
//! written with an older version that has a migration path is first copied beside itself
//! (`<file>.schema-<N>.<unix seconds>.bak`, logged), then each migration from N up runs in the
//! open's write transaction, which also records the new version: the file is migrated whole or
//! not at all. A newer version, or an older one without a path (the record format before
//! schema 2), is refused.

use super::{META, Result, SCHEMA, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableError, WriteTransaction};
use std::path::{Path, PathBuf};

struct Migration {
    /// The version it migrates from (to the next one).
    from: u64,
    what: &'static str,
    run: fn(&WriteTransaction) -> Result<()>,
}

const MIGRATIONS: &[Migration] = &[Migration {
    from: 2,
    what: "workflow indexes (not ended; newest of each kind) built from the records; from \
           schema 3 on every change keeps them and they are no longer rebuilt at every start",
    run: super::workflows::index_workflows,
}];

fn migratable(from: u64) -> bool {
    from < SCHEMA && (from..SCHEMA).all(|v| MIGRATIONS.iter().any(|m| m.from == v))
}

/// The version recorded in an existing store file (None: no file, or no version in it).
fn recorded(path: &Path) -> Result<Option<u64>> {
    if !path.exists() {
        return Ok(None);
    }
    let db = Database::open(path)?;
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get("schema")?.map(|v| v.value()))
}

/// Before the store is opened for writing: a copy of a file about to be migrated, with the
/// version it had.
pub(super) fn backup_if_needed(path: &Path) -> Result<Option<(PathBuf, u64)>> {
    let Some(from) = recorded(path)?.filter(|&v| migratable(v)) else {
        return Ok(None);
    };
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".schema-{from}.{secs}.bak"));
    let copy = path.with_file_name(name);
    let io = |e: std::io::Error| StoreError::Redb(redb::Error::Io(e));
    std::fs::copy(path, &copy).map_err(io)?;
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    Ok(Some((copy, from)))
}

/// Checks the recorded version in the open's transaction and migrates an older store
/// (`fresh`: the store holds nothing yet, so it gets the current version).
pub(super) fn settle(txn: &WriteTransaction, fresh: bool) -> Result<()> {
    let found = txn.open_table(META)?.get("schema")?.map(|v| v.value());
    match found {
        Some(SCHEMA) => return Ok(()),
        None if fresh => {}
        Some(v) if migratable(v) => {
            for m in MIGRATIONS.iter().filter(|m| m.from >= v) {
                tracing::info!(
                    from = m.from,
                    to = m.from + 1,
                    what = m.what,
                    "store migration"
                );
                (m.run)(txn)?;
            }
        }
        None => return Err(StoreError::Schema { found: 1 }),
        Some(found) => return Err(StoreError::Schema { found }),
    }
    txn.open_table(META)?.insert("schema", SCHEMA)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    /// A store file written by the release whose formats were schema 2 (two workflows, one
    /// running; an operator).
    const SCHEMA2: &[u8] = include_bytes!("fixtures/schema2.redb");

    #[test]
    fn a_schema_2_store_is_copied_then_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        std::fs::write(&path, SCHEMA2).expect("write");
        assert_eq!(recorded(&path).expect("read"), Some(2));
        let store = Store::open(&path).expect("open");
        assert_eq!(recorded_in(&store), Some(SCHEMA));
        let ids: Vec<String> = store
            .active_workflows()
            .expect("active")
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(ids, ["02-b"]);
        assert_eq!(store.workflows().expect("all").len(), 2);
        assert!(store.operator("admin").expect("operator").is_some());
        drop(store);
        let copies: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains(".schema-2."))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        // The copy is the store as it was: schema 2, its records there.
        assert_eq!(recorded(&copies[0]).expect("copy"), Some(2));
        // Opened again: nothing more to migrate, no second copy.
        Store::open(&path).expect("reopen");
        let n = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(n, 2);
    }

    #[test]
    fn versions_without_a_path_are_refused() {
        assert!(!migratable(1));
        assert!(!migratable(SCHEMA));
        assert!(!migratable(SCHEMA + 1));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        drop(Store::open(&path).expect("new"));
        {
            let db = Database::create(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert("schema", SCHEMA + 1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        match Store::open(&path) {
            Err(StoreError::Schema { found }) => assert_eq!(found, SCHEMA + 1),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    fn recorded_in(store: &Store) -> Option<u64> {
        store
            .read(|txn| Ok(txn.open_table(META)?.get("schema")?.map(|v| v.value())))
            .expect("meta")
    }
}
